"""The claims of findings.md, one at a time: data that support each, data that refute it, and missing data.

Each table below is hand-built with only the columns its claim declares (`fn.columns`) plus the run ids it
groups by, and goes through `findings_rows` as the workflow's does: a claim reading a column it did not
declare fails here with KeyError/AttributeError.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ddscope import findings
from ddscope.findings import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, findings_rows

DEPTHS = {"mlp3": 2, "mlp5": 4, "mlp7": 6}
PARAMS = {"majority": 0.5, "separation_gap": 0.05}  # schema defaults
RATIO_THRESHOLD = 10.0  # analyses.large_activation.ratio_threshold's default
NAN = float("nan")


def table(**columns) -> pd.DataFrame:
    """Two seeds of each model of DEPTHS (cross-entropy), then the given columns, one value per row."""
    runs = pd.DataFrame({"model": [m for m in DEPTHS for _ in (0, 1)], "loss": "ce", "seed": [0, 1] * len(DEPTHS)})
    for name, values in columns.items():
        runs[name] = values
    return runs


def deep_only(value, other=NAN) -> list:
    """A column whose deepest model (mlp7, the last two rows) has `value` and the others `other`."""
    return [other] * 4 + [value] * 2


def large_activation(shallow, deep, init=3.0) -> pd.DataFrame:
    """Claim 4's columns as summary_columns writes them: trained max ratio `shallow` in every layer of the shallow
    half (ceil(L/2) layers; the largest in layer 1), `deep` in the deep half, `init` at epoch 0 (scalars or one
    value per row of table())."""
    runs = table()
    depth = runs.model.map(DEPTHS).to_numpy()
    shallow, deep = (np.broadcast_to(np.asarray(v, dtype=float), len(runs)) for v in (shallow, deep))
    for k in range(1, 7):
        runs[f"ratio_max_l{k}"] = np.where(k <= (depth + 1) // 2, shallow, np.where(k <= depth, deep, NAN))
    return runs.assign(ratio_max_last=deep, large_layer=np.where(np.isfinite(shallow), 1.0, NAN), large_ratio=shallow,
                       large_epoch=500.0, large_ratio_init=init, large_second_to_top=0.1, large_deep_ratio=deep)


def follows(input_r2, output_eta2) -> pd.DataFrame:
    """Claim 5's columns: the shallow top unit's input R² and output η² (scalars or one value per row)."""
    return table(large_layer=1.0, large_ratio=50.0, large_analysed_epoch=400.0, large_input_r2=input_r2,
                 large_output_eta2=output_eta2, large_same_unit=1.0)


def label_smoothing(ls_dilation: float, ce_dilation: float = 1.2) -> pd.DataFrame:
    rows = [{"model": m, "loss": loss, "seed": s, "dilation_final": ls_dilation if loss == "ls" else ce_dilation,
             "memorization_final": 1.5, "final_accuracy_test": 0.8 if loss == "ls" else 0.75}
            for m in DEPTHS for loss in ("ce", "ls") for s in (0, 1)]
    return pd.DataFrame(rows)


def separation_trend(first, last, final_first=0.9, final_last=0.6) -> pd.DataFrame:
    """Change of the clean/noisy cosine from the end of phase 1 (epoch 20) to the last epoch, layer 1 and last."""
    return table(separation_trend_start=20.0, separation_trend_l1=first, separation_trend_last=last,
                 separation_trend_original_l1=first, separation_trend_original_last=last,
                 separation_final_l1=final_first, separation_final_last=final_last)


def memorization_dilation(memorization, dilation) -> pd.DataFrame:
    """Change of memorization and dilation from the end of phase 1 (epoch 20) to the last epoch."""
    return table(collapse_trend_start=20.0, memorization_trend=memorization, dilation_trend=dilation,
                 memorization_final=1.5, dilation_final=0.4)


def double_descent(curve: str, flag) -> pd.DataFrame:
    """Claim 1's (curve "test_loss") or its test-error counterpart's columns: the flag, first minimum, peak, final."""
    scale = 10.0 if curve == "test_loss" else 0.1
    return table(**{f"double_descent_{curve}": flag, f"{curve}_min": scale, f"{curve}_peak": 3 * scale,
                    f"{curve}_final": 2 * scale})


def benign(regeneralises, returns=0.0, t_fit_noisy=200.0) -> pd.DataFrame:
    """Claim 6's columns: the noisy fit epoch, the two benign flags and the test error around them."""
    return table(t_fit_noisy=t_fit_noisy, regeneralises_after_fit=regeneralises, benign_overfitting=returns,
                 test_error_fall_after_fit=0.02, dd_depth=0.08, test_error_final=0.36, test_error_min=0.3)


def late_change(flag, last, first=0.05) -> pd.DataFrame:
    """Claim 8's columns: double_descent_test_loss and the late change (1 − CKA) of the first and last layers."""
    return table(double_descent_test_loss=flag, cka_late_change_l1=first, cka_late_change_last=last,
                 cka_late_epoch=300.0)


# claim -> case -> (runs, expected verdict)
CASES = {
    findings.claim_dd_deepest_only: {
        "supports": (double_descent("test_loss", deep_only(1.0, 0.0)), SUPPORTED),
        "refutes": (double_descent("test_loss", [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]), NOT_SUPPORTED),  # mlp5 too
        "missing": (double_descent("test_loss", NAN), INCONCLUSIVE),
    },
    findings.claim_dd_deepest_only_test_error: {
        "supports": (double_descent("test_error", deep_only(1.0, 0.0)), SUPPORTED),
        "refutes": (double_descent("test_error", [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]), NOT_SUPPORTED),  # mlp3 too
        "missing": (double_descent("test_error", deep_only(NAN, 0.0)), INCONCLUSIVE),
    },
    findings.claim_clean_first: {
        "supports": (table(t_fit_clean=[5, 6, 5, 6, 7, 8], t_fit_noisy=[20, 25, 20, 25, 30, 35],
                           final_accuracy_train_clean=1.0, final_accuracy_train_noisy_assigned=0.9), SUPPORTED),
        "refutes": (table(t_fit_clean=[20, 25, 20, 25, 30, 35], t_fit_noisy=[5, 6, 5, 6, 7, 8],
                          final_accuracy_train_clean=1.0, final_accuracy_train_noisy_assigned=1.0), NOT_SUPPORTED),
        "missing": (table(t_fit_clean=NAN, t_fit_noisy=NAN,
                          final_accuracy_train_clean=0.6, final_accuracy_train_noisy_assigned=0.1), INCONCLUSIVE),
    },
    findings.claim_outer_separation: {
        "supports": (separation_trend(first=-0.02, last=[-0.3, -0.2] * 3), SUPPORTED),
        # the MLP7: the last layer's cosine rises again after phase 1 (0.67 → 0.79)
        "refutes": (separation_trend(first=-0.02, last=0.12, final_last=0.79), NOT_SUPPORTED),
        "missing": (separation_trend(first=NAN, last=NAN, final_first=NAN, final_last=NAN), INCONCLUSIVE),
    },
    findings.claim_shallow_large_activation: {
        "supports": (large_activation(shallow=50.0, deep=4.0), SUPPORTED),
        # nothing reaches the threshold over trained epochs; a large ratio at initialisation is not judged
        "refutes": (large_activation(shallow=5.0, deep=4.0, init=50.0), NOT_SUPPORTED),
        "missing": (large_activation(shallow=NAN, deep=NAN), INCONCLUSIVE),
    },
    findings.claim_input_not_output: {
        "supports": (follows(input_r2=0.6, output_eta2=0.2), SUPPORTED),
        "refutes": (follows(input_r2=0.2, output_eta2=0.6), NOT_SUPPORTED),
        "missing": (follows(input_r2=NAN, output_eta2=0.6), INCONCLUSIVE),
    },
    findings.claim_benign: {
        # re-generalises without returning to the first minimum: the paper's wording holds, the strict one not
        "supports": (benign(regeneralises=deep_only(1.0, 0.0), returns=0.0), SUPPORTED),
        "refutes": (benign(regeneralises=deep_only(0.0, 1.0), returns=1.0), NOT_SUPPORTED),
        "missing": (benign(regeneralises=0.0, t_fit_noisy=deep_only(NAN, 200.0)), INCONCLUSIVE),  # never fitted
    },
    findings.claim_routing: {
        "supports": (table(routing_margin_correct=0.2, routing_margin_incorrect=-0.1), SUPPORTED),
        "refutes": (table(routing_margin_correct=-0.1, routing_margin_incorrect=0.2), NOT_SUPPORTED),
        "missing": (table(routing_margin_correct=NAN, routing_margin_incorrect=NAN), INCONCLUSIVE),
    },
    findings.claim_late_change_deeper: {
        "supports": (late_change([0.0, 0.0, 1.0, 1.0, 1.0, 1.0], last=[0.05, 0.07, 0.35, 0.4, 0.38, 0.36]), SUPPORTED),
        # mlp3 without double descent changes as much late (the default study): not due to double descent
        "refutes": (late_change([0.0, 0.0, 1.0, 1.0, 1.0, 1.0], last=[0.36, 0.4, 0.35, 0.4, 0.38, 0.36]),
                    NOT_SUPPORTED),
        "missing": (late_change(1.0, last=0.4), INCONCLUSIVE),  # no run without double descent to compare with
    },
    findings.claim_dilation: {
        "supports": (memorization_dilation(memorization=[0.8, 1.1] * 3, dilation=0.1), SUPPORTED),
        "refutes": (memorization_dilation(memorization=[0.8, 1.1] * 3, dilation=-0.1), NOT_SUPPORTED),
        "missing": (memorization_dilation(memorization=NAN, dilation=NAN), INCONCLUSIVE),
    },
    findings.claim_label_smoothing: {
        "supports": (label_smoothing(ls_dilation=1.0), SUPPORTED),
        "refutes": (label_smoothing(ls_dilation=1.5), NOT_SUPPORTED),
        "missing": (label_smoothing(ls_dilation=NAN), INCONCLUSIVE),
    },
}
CLAIM_NAMES = {fn: (claim, source) for claim, source, fn in findings.CLAIMS}


def row_of(fn, runs: pd.DataFrame, monkeypatch, params=PARAMS) -> tuple:
    """(claim, measured, criterion, verdict) of one claim, through findings_rows (the quoted source left out)."""
    monkeypatch.setattr(findings, "CLAIMS", [(*CLAIM_NAMES[fn], fn)])
    (row,) = findings_rows(runs, DEPTHS, params, RATIO_THRESHOLD)
    return (row[0], *row[2:])


def test_every_claim_has_its_cases_and_declares_its_columns():
    assert set(CASES) == {fn for *_, fn in findings.CLAIMS} and len(findings.CLAIMS) == 11
    for fn in CASES:
        assert fn.columns and len(set(fn.columns)) == len(fn.columns), fn.__name__


@pytest.mark.parametrize("fn, case", [(fn, case) for fn, cases in CASES.items() for case in cases],
                         ids=lambda x: x.__name__.removeprefix("claim_") if callable(x) else x)
def test_claim_verdict(fn, case, monkeypatch):
    runs, expected = CASES[fn][case]
    claim, measured, criterion, verdict = row_of(fn, runs, monkeypatch)
    assert verdict == expected, (measured, criterion)
    assert claim == CLAIM_NAMES[fn][0] and criterion and measured and not measured.startswith("not measured")


@pytest.mark.parametrize("fn", list(CASES), ids=lambda fn: fn.__name__.removeprefix("claim_"))
def test_claim_without_its_column_is_not_measured(fn, monkeypatch):
    """An analysis that was not run: the claim is not called, and the row names the absent column."""
    runs, _ = CASES[fn]["supports"]
    column = next(c for c in fn.columns if c not in ("model", "loss"))
    runs = runs.drop(columns=[c for c in runs.columns if c == column])
    _, measured, criterion, verdict = row_of(fn, runs, monkeypatch)
    assert verdict == INCONCLUSIVE and criterion == ""
    assert measured == f"not measured (no column {column} in tables/runs.csv)"


def test_not_measured_names_every_absent_column(monkeypatch):
    runs = table(routing_margin_correct=0.2)[["model", "seed"]]
    _, measured, _, _ = row_of(findings.claim_routing, runs, monkeypatch)
    assert measured == "not measured (no column routing_margin_correct, routing_margin_incorrect in tables/runs.csv)"


# the edges of the existing verdict logic


@pytest.mark.parametrize("curve", ["test_loss", "test_error"])
def test_dd_deepest_only_needs_two_models(curve, monkeypatch):
    fn = findings.claim_dd_deepest_only if curve == "test_loss" else findings.claim_dd_deepest_only_test_error
    assert row_of(fn, double_descent(curve, 1.0).query("model == 'mlp7'"), monkeypatch)[3] == INCONCLUSIVE


def test_dd_deepest_only_measures_its_own_curve(monkeypatch):
    """Row 1 reads the test loss, its counterpart the test error: each flag decides only its own row."""
    runs = double_descent("test_loss", deep_only(1.0, 0.0)).merge(
        double_descent("test_error", [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]), on=["model", "loss", "seed"])
    _, loss_measured, loss_criterion, loss_verdict = row_of(findings.claim_dd_deepest_only, runs, monkeypatch)
    _, *_, error_verdict = row_of(findings.claim_dd_deepest_only_test_error, runs, monkeypatch)
    assert (loss_verdict, error_verdict) == (SUPPORTED, NOT_SUPPORTED)
    assert "mlp7: flag in 100% of seeds, test loss min → peak → final 10 → 30 → 20" in loss_measured
    assert loss_criterion.startswith("double_descent_test_loss in ≥ 50% of the deepest model's seeds")


def test_benign_reports_the_strict_flag_and_needs_a_noisy_fit(monkeypatch):
    _, measured, criterion, _ = row_of(findings.claim_benign, benign(deep_only(1.0, 0.0)), monkeypatch)
    assert "noisy labels fitted in 2 of 2 seeds" in measured
    assert "re-generalises in 100%; returns to the first minimum in 0%" in measured
    assert criterion.startswith("regeneralises_after_fit")
    # seeds that never fitted the noise are left out; the verdict rests on those that did
    runs = benign(regeneralises=deep_only(1.0, 0.0), t_fit_noisy=[200.0] * 5 + [NAN])
    _, measured, _, verdict = row_of(findings.claim_benign, runs, monkeypatch)
    assert verdict == SUPPORTED and "fitted in 1 of 2 seeds" in measured


def test_clean_first_when_only_clean_samples_were_fitted(monkeypatch):
    runs = table(t_fit_clean=5.0, t_fit_noisy=NAN, final_accuracy_train_clean=1.0,
                 final_accuracy_train_noisy_assigned=0.2)
    _, measured, _, verdict = row_of(findings.claim_clean_first, runs, monkeypatch)
    assert verdict == SUPPORTED and "final clean − noisy accuracy 0.800 ± 0.000 (n=6)" in measured


def test_shallow_large_activation_measured(monkeypatch):
    runs, _ = CASES[findings.claim_shallow_large_activation]["supports"]
    _, measured, criterion, _ = row_of(findings.claim_shallow_large_activation, runs, monkeypatch)
    mlp3, mlp5, mlp7 = measured.split("; mlp")
    assert mlp3.startswith("mlp3: trained max top/median ratio, layer 1: 50.0, layer 2: 4.0 (seed means);")
    assert mlp5.startswith("5: trained max top/median ratio, layers 1–2: 50.0, 50.0, layers 3–4: 4.0, 4.0")
    assert mlp7 == ("7: trained max top/median ratio, layers 1–3: 50.0, 50.0, 50.0, layers 4–6: 4.0, 4.0, 4.0 "
                    "(seed means); shallow maximum 50.0 ± 0.0 (n=2) in layer [1] at epoch 500 ± 0 (n=2), "
                    "3.0 ± 0.0 (n=2) at initialisation, second unit / top 0.10 ± 0.00 (n=2), "
                    "deep half's maximum 4.0 ± 0.0 (n=2); ≥ 10 in 2 of 2 seeds")
    assert criterion == ("every model, in ≥ 50% of its seeds: the largest trained-epoch ratio of the shallow half "
                         "(layers 1…⌈L/2⌉) ≥ 10 (the deep half's and epoch 0's reported, not judged)")


@pytest.mark.parametrize("shallow, deep, expected", [
    (20.0, 30.0, SUPPORTED),  # a very large shallow activation, whatever the deep half does (reported beside it)
    (5.0, 30.0, NOT_SUPPORTED),  # large only in the deep half: not where the paper locates it
    ([50.0, 50.0, 5.0, 5.0, 50.0, 50.0], 4.0, NOT_SUPPORTED),  # one model without: not "across all models"
    ([50.0, 50.0, NAN, NAN, 50.0, 50.0], 4.0, INCONCLUSIVE),  # one model unmeasured, none refutes
    ([50.0, 5.0] * 3, 4.0, SUPPORTED),  # half of each model's seeds: the majority criterion's edge
    ([50.0, 5.0, 5.0, 5.0, 50.0, 50.0], 4.0, NOT_SUPPORTED),
    (50.0, NAN, SUPPORTED),  # deep half unmeasured: the shallow half decides
    (NAN, 40.0, INCONCLUSIVE),  # shallow half unmeasured
], ids=["deep-larger", "deep-only", "one-model-without", "one-model-missing", "half-of-seeds", "minority",
        "deep-missing", "shallow-missing"])
def test_shallow_large_activation_verdicts(shallow, deep, expected, monkeypatch):
    runs = large_activation(shallow=shallow, deep=deep)
    assert row_of(findings.claim_shallow_large_activation, runs, monkeypatch)[3] == expected


def test_shallow_large_activation_without_a_deep_half(monkeypatch):
    """One hidden layer: the shallow half is the network, nothing deeper can be larger."""
    runs = pd.DataFrame({"model": "mlp2", "seed": [0, 1], "ratio_max_l1": 50.0, "ratio_max_last": 50.0,
                         "large_layer": 1.0, "large_ratio": 50.0, "large_epoch": 500.0, "large_ratio_init": 3.0,
                         "large_second_to_top": 0.1, "large_deep_ratio": NAN})
    fn = findings.claim_shallow_large_activation
    monkeypatch.setattr(findings, "CLAIMS", [(*CLAIM_NAMES[fn], fn)])
    (row,) = findings_rows(runs, {"mlp2": 1}, PARAMS, RATIO_THRESHOLD)
    assert row[-1] == SUPPORTED and "ratio, layer 1: 50.0 (seed means)" in row[2]


def test_input_not_output_measured_and_every_model(monkeypatch):
    runs, _ = CASES[findings.claim_input_not_output]["supports"]
    _, measured, criterion, _ = row_of(findings.claim_input_not_output, runs, monkeypatch)
    assert measured.split("; mlp")[-1] == (
        "7: top unit of shallow layer [1], ratio 50.0 ± 0.0 (n=2), at analysed epoch 400 ± 0 (n=2): input R² "
        "0.600 ± 0.000 (n=2) vs output η² 0.200 ± 0.000 (n=2); input > output in 2 of 2 seeds; the unit of the "
        "ratio's peak in 2 of 2")
    assert "shallow half's top unit, at the analysed epoch nearest its trained peak" in criterion
    one_model_follows_labels = follows(input_r2=0.6, output_eta2=[0.2, 0.2, 0.2, 0.2, 0.9, 0.9])
    assert row_of(findings.claim_input_not_output, one_model_follows_labels, monkeypatch)[3] == NOT_SUPPORTED
    one_model_missing = follows(input_r2=[0.6, 0.6, NAN, NAN, 0.6, 0.6], output_eta2=0.2)
    assert row_of(findings.claim_input_not_output, one_model_missing, monkeypatch)[3] == INCONCLUSIVE


def test_routing_right_order_wrong_signs_is_inconclusive(monkeypatch):
    runs = table(routing_margin_correct=0.3, routing_margin_incorrect=0.1)
    assert row_of(findings.claim_routing, runs, monkeypatch)[3] == INCONCLUSIVE


def test_late_change_without_double_descent_is_inconclusive(monkeypatch):
    _, measured, _, verdict = row_of(findings.claim_late_change_deeper, late_change(0.0, last=0.4), monkeypatch)
    assert verdict == INCONCLUSIVE and "runs with double descent of the test loss (none)" in measured
    nan_cka = late_change([0.0, 0.0, 1.0, 1.0, 1.0, 1.0], last=[NAN, NAN, 0.35, 0.4, 0.38, 0.36])
    assert row_of(findings.claim_late_change_deeper, nan_cka, monkeypatch)[3] == INCONCLUSIVE
    one_each = late_change(deep_only(1.0, 0.0), last=deep_only(0.4, 0.05)).iloc[3:5]  # mlp5, mlp7: no spread
    assert row_of(findings.claim_late_change_deeper, one_each, monkeypatch)[3] == INCONCLUSIVE


def test_late_change_difference_within_the_spread_is_not_supported(monkeypatch):
    runs = late_change([0.0, 0.0, 1.0, 1.0, 1.0, 1.0], last=[0.1, 0.5, 0.2, 0.6, 0.3, 0.5])
    _, measured, _, verdict = row_of(findings.claim_late_change_deeper, runs, monkeypatch)
    assert verdict == NOT_SUPPORTED  # + 0.1 with, against a spread of about 0.2
    assert "(mlp5×2, mlp7×2)" in measured and "without (mlp3×2)" in measured and "difference +0.100" in measured


def test_label_smoothing_without_ls_runs_keeps_its_message(monkeypatch):
    runs = label_smoothing(ls_dilation=1.0).query("loss == 'ce'")
    _, measured, _, verdict = row_of(findings.claim_label_smoothing, runs, monkeypatch)
    assert verdict == INCONCLUSIVE
    assert measured == "no label-smoothing runs in this study (see configs/label-smoothing.yaml)"


def test_outer_separation_needs_the_last_layer_to_separate_more_than_the_first(monkeypatch):
    # both layers separate, the first one more: not the paper's outer-layer separation
    runs = separation_trend(first=-0.4, last=-0.2)
    assert row_of(findings.claim_outer_separation, runs, monkeypatch)[3] == NOT_SUPPORTED
    # the last layer separates more than the first, but by less than separation_gap
    runs = separation_trend(first=0.01, last=-0.03)
    assert row_of(findings.claim_outer_separation, runs, monkeypatch)[3] == NOT_SUPPORTED
    _, measured, criterion, _ = row_of(findings.claim_outer_separation, separation_trend(-0.02, -0.3), monkeypatch)
    assert measured.startswith("mlp3: change of cos(μ_clean, μ_noisy) from the end of phase 1 (epoch 20 ± 0 (n=2))")
    assert "falls by > 0.05 and more than layer 1's" in criterion


def test_dilation_without_memorization_is_inconclusive(monkeypatch):
    """No run memorised more after phase 1: the premise of the claim is absent, whatever dilation does."""
    runs = memorization_dilation(memorization=-0.1, dilation=0.2)
    _, measured, _, verdict = row_of(findings.claim_dilation, runs, monkeypatch)
    assert verdict == INCONCLUSIVE and measured.endswith("dilation grew in 0 of the 0 runs whose memorization grew")
    # label-smoothing runs do not count: the claim is made of cross-entropy training
    runs = memorization_dilation(memorization=0.8, dilation=0.1).assign(loss="ls")
    assert row_of(findings.claim_dilation, runs, monkeypatch)[3] == INCONCLUSIVE


# programming errors raise; they are not verdicts


@findings.needs("model", "dilation_final")
def _misspelt(runs, depths, p):
    return "", "", SUPPORTED if (runs["dilation_finall"] > 1).all() else NOT_SUPPORTED


@findings.needs("model")
def _undeclared(runs, depths, p):
    return "", "", SUPPORTED if (runs.dilation_final > 1).all() else NOT_SUPPORTED


def test_misspelt_column_raises(monkeypatch):
    monkeypatch.setattr(findings, "CLAIMS", [("faulty", "", _misspelt)])
    with pytest.raises(KeyError, match="dilation_finall"):
        findings_rows(table(dilation_final=1.3), DEPTHS, PARAMS, RATIO_THRESHOLD)


def test_column_read_but_not_declared_raises_even_when_present(monkeypatch):
    monkeypatch.setattr(findings, "CLAIMS", [("faulty", "", _undeclared)])
    with pytest.raises(AttributeError, match="dilation_final"):
        findings_rows(table(dilation_final=1.3), DEPTHS, PARAMS, RATIO_THRESHOLD)


def test_missing_criterion_raises(monkeypatch):
    runs, _ = CASES[findings.claim_dilation]["supports"]
    with pytest.raises(KeyError, match="majority"):
        row_of(findings.claim_dilation, runs, monkeypatch, params={})


# all claims on one table


def full_table(seed=0) -> pd.DataFrame:
    """Every column any claim declares, random values, for 3 models × 2 losses × 3 seeds."""
    rng = np.random.default_rng(seed)
    runs = pd.DataFrame([{"run": f"{m}-sym30-{loss}-s{s}", "model": m, "noise": "sym30", "loss": loss, "seed": s}
                         for m in DEPTHS for loss in ("ce", "ls") for s in range(3)])
    n = len(runs)
    for column in dict.fromkeys(c for *_, fn in findings.CLAIMS for c in fn.columns if c not in runs.columns):
        if column.endswith("*"):
            for k in range(1, 7):
                runs[f"{column[:-1]}{k}"] = rng.integers(0, 100, n).astype(float)
        else:
            runs[column] = rng.random(n)
    for flag in ("double_descent_test_loss", "double_descent_test_error", "regeneralises_after_fit",
                 "benign_overfitting"):
        runs[flag] = rng.integers(0, 2, n).astype(float)
    runs["large_layer"] = [float(rng.integers(1, (DEPTHS[m] + 1) // 2 + 1)) for m in runs.model]  # shallow half
    runs["large_ratio"] = rng.uniform(1, 40, n)
    runs["large_deep_ratio"] = rng.uniform(1, 40, n)
    return runs


def test_findings_rows_on_a_full_table():
    rows = findings_rows(full_table(), DEPTHS, PARAMS, RATIO_THRESHOLD)
    assert [claim for claim, *_ in rows] == [claim for claim, *_ in findings.CLAIMS]
    assert all(verdict in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE) for *_, verdict in rows)
    assert not any(measured.startswith("not measured") for _, _, measured, _, _ in rows)


def test_findings_rows_without_an_analysis():
    """No routing analysis: only the routing row is "not measured", the others are computed as before."""
    runs = full_table()
    without = runs.drop(columns=["routing_margin_correct", "routing_margin_incorrect"])
    full, partial = (findings_rows(r, DEPTHS, PARAMS, RATIO_THRESHOLD) for r in (runs, without))
    i = [fn for *_, fn in findings.CLAIMS].index(findings.claim_routing)
    assert partial[i][2].startswith("not measured (no column routing_margin_correct")
    assert partial[:i] + partial[i + 1:] == full[:i] + full[i + 1:]


def test_claim_without_its_per_layer_columns_is_not_measured(monkeypatch):
    runs, _ = CASES[findings.claim_shallow_large_activation]["supports"]
    runs = runs.drop(columns=[c for c in runs.columns if c.startswith("ratio_max_")])
    _, measured, _, verdict = row_of(findings.claim_shallow_large_activation, runs, monkeypatch)
    assert verdict == INCONCLUSIVE and measured == "not measured (no column ratio_max_l* in tables/runs.csv)"


def test_markdown_numbers_the_sweep_rows_m1_m2():
    rows = [(f"claim {i}", "source", "measured", "criterion", SUPPORTED) for i in range(len(findings.CLAIMS) + 2)]
    numbers = [line.split("|")[1].strip() for line in findings.findings_markdown("t", rows).splitlines()
               if line.startswith("| ") and not line.startswith("| # ")]
    assert numbers == [str(i) for i in range(1, len(findings.CLAIMS) + 1)] + ["M1", "M2"]
