"""The claims of findings.md, one at a time: data that support each, data that refute it, and missing data.

Each table below is hand-built with only the columns its claim declares (`fn.columns`) plus the run ids it
groups by, and goes through `findings_rows` as the workflow's does: a claim reading a column it did not
declare fails here with KeyError/AttributeError. Three seeds per model and condition, with a seed-to-seed
spread, so that every verdict goes through the margin rule (mean ± margin_se standard errors over seeds).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ddscope import findings
from ddscope.findings import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, findings_rows, margin_verdict

DEPTHS = {"mlp3": 2, "mlp5": 4, "mlp7": 6}
SEEDS = (0, 1, 2)
# schema defaults (analyses.findings, and the double-descent keys the rule passes along)
PARAMS = {"majority": 0.5, "margin_se": 2.0, "separation_gap": 0.05, "clean_first_fraction": 0.5,
          "min_depth": 0.01, "min_recovery": 0.5, "noise_sigmas": 3.0}
RATIO_THRESHOLD = 10.0  # analyses.large_activation.ratio_threshold's default
NAN = float("nan")


def spread(value, width=0.02):
    """A per-row value: `value` ± `width` over the three seeds (value − width, value, value + width)."""
    return lambda row: value + width * (row["seed"] - 1)


def per_model(**values):
    """A per-row value by model (`mlp7=...`, `other=...` for the rest); each value may itself be per-row."""
    def pick(row):
        value = values.get(row["model"], values.get("other", NAN))
        return value(row) if callable(value) else value
    return pick


def per_noise(**values):
    """A per-row value by noise tag (`sym30=...`, `sym0=...`)."""
    def pick(row):
        value = values[row["noise"]]
        return value(row) if callable(value) else value
    return pick


def table(noises=("sym30",), losses=("ce",), **columns) -> pd.DataFrame:
    """Three seeds of each model of DEPTHS per noise tag and loss, then the given columns (scalars or functions
    of the row's ids)."""
    rows = [{"model": m, "noise": n, "loss": loss, "seed": s} for m in DEPTHS for n in noises for loss in losses
            for s in SEEDS]
    runs = pd.DataFrame(rows)
    for name, value in columns.items():
        runs[name] = [float(value(r)) if callable(value) else float(value) for r in rows]
    return runs


def double_descent(curve: str, ratio, noises=("sym30",)) -> pd.DataFrame:
    """Rows 1/2's columns: the recovery ratio after the fit (per row), levels, the flag where ratio ≥ 1/2."""
    scale = 10.0 if curve == "test_loss" else 0.1
    runs = table(noises, **{f"{curve}_recovery_ratio": ratio, f"{curve}_min": scale, f"{curve}_peak": 3 * scale,
                            f"{curve}_final": 2 * scale})
    return runs.assign(**{f"double_descent_{curve}": (runs[f"{curve}_recovery_ratio"] >= 0.5).astype(float)})


def separation(outer, inner=spread(-0.02)) -> pd.DataFrame:
    """Row 4's columns: the change of the original-label cosine from the end of phase 1 to the last epoch."""
    return table(separation_trend_start=20.0, separation_trend_original_l1=inner, separation_trend_original_last=outer,
                 separation_trend_l1=-0.01, separation_trend_last=0.2, separation_final_l1=0.9,
                 separation_final_last=0.8, separation_final_original_l1=0.9, separation_final_original_last=0.5)


def large_activation(shallow, deep=4.0, init=3.0) -> pd.DataFrame:
    """Row 5's columns: trained max ratio `shallow` in every layer of the shallow half (ceil(L/2) layers),
    `deep` in the deep half, `init` at epoch 0 (each a scalar or per row)."""
    runs = table(large_ratio=shallow, large_deep_ratio=deep, large_ratio_init=init)
    depth = runs.model.map(DEPTHS).to_numpy()
    for k in range(1, 7):
        runs[f"ratio_max_l{k}"] = np.where(k <= (depth + 1) // 2, runs.large_ratio,
                                           np.where(k <= depth, runs.large_deep_ratio, NAN))
    return runs.assign(large_layer=np.where(np.isfinite(runs.large_ratio), 1.0, NAN), large_epoch=500.0,
                       large_second_to_top=0.1)


def follows(input_r2, output_r2, typical_input=spread(0.5), typical_output=spread(0.4), ratio=spread(50.0, 2.0)):
    """Row 6's columns: the shallow top unit's and the typical units' input and output R² (per row)."""
    return table(large_layer=1.0, large_ratio=ratio, large_ratio_init=3.0, large_analysed_epoch=400.0,
                 large_input_r2=input_r2, large_output_r2=output_r2, large_typical_input_r2=typical_input,
                 large_typical_output_r2=typical_output)


def benign(ratio, phase2_end=200.0, t_fit_noisy=200.0) -> pd.DataFrame:
    """Row 7's columns: the recovery ratio of the test error after the fit and the strict flag beside it."""
    return table(t_fit_noisy=t_fit_noisy, phase2_end=phase2_end, test_error_recovery_ratio=ratio,
                 regeneralises_after_fit=lambda r: 1.0, benign_overfitting=0.0, test_error_fall_after_fit=0.02,
                 dd_depth=0.08, test_error_final=0.36, test_error_min=0.3)


def routing(correct, incorrect, correct_init=spread(0.0), incorrect_init=spread(0.0)) -> pd.DataFrame:
    return table(routing_margin_correct=correct, routing_margin_incorrect=incorrect,
                 routing_margin_correct_init=correct_init, routing_margin_incorrect_init=incorrect_init)


def late_change(last, noises=("sym0", "sym30")) -> pd.DataFrame:
    """Row 9's columns: mlp7 has double descent at 30 % noise (recovery 0.7) and none at 0 % (0.0); the others
    never. `last`: the last layer's late change per row (layer 1's is 0.05)."""
    return table(noises, test_loss_recovery_ratio=per_model(mlp7=per_noise(sym30=spread(0.7), sym0=spread(0.0, 0.01)),
                                                           other=spread(0.1)),
                 cka_late_change_l1=0.05, cka_late_change_last=last, cka_late_epoch=300.0)


def dilation(value, noises=("sym0", "sym30")) -> pd.DataFrame:
    """Row 10's columns: dilation_normalized at the last epoch per row, the official forms beside it."""
    return table(noises, dilation_normalized_final=value, dilation_std_mean_final=0.3,
                 memorization_normalized_final=1.5, memorization_sum_final=120.0)


def label_smoothing(ls_dilation) -> pd.DataFrame:
    return table(losses=("ce", "ls"), dilation_normalized_final=lambda r: (ls_dilation(r) if callable(ls_dilation)
                                                                          else ls_dilation) if r["loss"] == "ls"
                 else 1.2 + 0.02 * (r["seed"] - 1), memorization_normalized_final=1.5,
                 final_accuracy_test=lambda r: 0.8 if r["loss"] == "ls" else 0.75)


DD_ONLY_DEEPEST = per_model(mlp7=spread(0.7, 0.05), other=spread(0.1, 0.05))

# claim -> case -> (runs, expected verdict)
CASES = {
    findings.claim_dd_deepest_only: {
        "supports": (double_descent("test_loss", DD_ONLY_DEEPEST), SUPPORTED),
        # the MLP5: it takes back a fifth of its bump; here it takes back as much as MLP7
        "refutes": (double_descent("test_loss", per_model(mlp3=spread(0.0), other=spread(0.7))), NOT_SUPPORTED),
        "missing": (double_descent("test_loss", per_model(mlp7=NAN, other=spread(0.1))), INCONCLUSIVE),
    },
    findings.claim_dd_deepest_only_test_error: {
        "supports": (double_descent("test_error", DD_ONLY_DEEPEST), SUPPORTED),
        "refutes": (double_descent("test_error", per_model(mlp7=spread(0.1), other=spread(0.1))), NOT_SUPPORTED),
        "missing": (double_descent("test_error", NAN), INCONCLUSIVE),
    },
    findings.claim_clean_first: {
        "supports": (table(t_fit_clean=6, t_fit_noisy=250, t_noisy_onset=30, clean_learned_at_onset=spread(0.9)),
                     SUPPORTED),
        # learned together: a fifth of the clean gain made when the noisy labels leave chance
        "refutes": (table(t_fit_clean=60, t_fit_noisy=70, t_noisy_onset=3, clean_learned_at_onset=spread(0.2)),
                    NOT_SUPPORTED),
        "missing": (table(t_fit_clean=NAN, t_fit_noisy=NAN, t_noisy_onset=NAN, clean_learned_at_onset=NAN),
                    INCONCLUSIVE),
    },
    findings.claim_outer_separation: {
        "supports": (separation(outer=spread(-0.3)), SUPPORTED),
        # the last layer's cosine rises again after phase 1
        "refutes": (separation(outer=spread(0.12)), NOT_SUPPORTED),
        "missing": (separation(outer=NAN, inner=NAN), INCONCLUSIVE),
    },
    findings.claim_shallow_large_activation: {
        "supports": (large_activation(shallow=spread(50.0, 2.0)), SUPPORTED),
        # nothing reaches the threshold over trained epochs; a large ratio at initialisation is not judged
        "refutes": (large_activation(shallow=spread(5.0, 0.5), init=50.0), NOT_SUPPORTED),
        "missing": (large_activation(shallow=NAN, deep=NAN), INCONCLUSIVE),
    },
    findings.claim_input_not_output: {
        "supports": (follows(input_r2=spread(0.6), output_r2=spread(0.2)), SUPPORTED),
        "refutes": (follows(input_r2=spread(0.2), output_r2=spread(0.6)), NOT_SUPPORTED),
        # row 5 finds no large activation: nothing to judge, whatever the R²
        "missing": (follows(input_r2=spread(0.6), output_r2=spread(0.2), ratio=spread(3.0, 0.2)), INCONCLUSIVE),
    },
    findings.claim_benign: {
        # takes back 70 % of the rise after the fit without returning to the first minimum: the paper's wording
        "supports": (benign(ratio=spread(0.7, 0.05)), SUPPORTED),
        "refutes": (benign(ratio=spread(0.1, 0.05)), NOT_SUPPORTED),
        "missing": (benign(ratio=NAN, phase2_end=NAN, t_fit_noisy=NAN), INCONCLUSIVE),  # never fitted
    },
    findings.claim_routing: {
        "supports": (routing(correct=spread(0.2), incorrect=spread(-0.1)), SUPPORTED),
        "refutes": (routing(correct=spread(-0.1), incorrect=spread(0.2)), NOT_SUPPORTED),
        "missing": (routing(correct=NAN, incorrect=NAN), INCONCLUSIVE),
    },
    findings.claim_late_change_with_dd: {
        "supports": (late_change(per_model(mlp7=per_noise(sym30=spread(0.4), sym0=spread(0.1)), other=0.2)),
                     SUPPORTED),
        # mlp7 without noise (no double descent) changes as much late: not due to double descent
        "refutes": (late_change(per_model(mlp7=per_noise(sym30=spread(0.2), sym0=spread(0.4)), other=0.2)),
                    NOT_SUPPORTED),
        "missing": (late_change(0.4, noises=("sym30",)), INCONCLUSIVE),  # no 0 %-noise control
    },
    findings.claim_dilation: {
        "supports": (dilation(per_noise(sym30=spread(1.2), sym0=spread(0.8))), SUPPORTED),
        "refutes": (dilation(per_noise(sym30=spread(0.7), sym0=spread(0.8))), NOT_SUPPORTED),
        "missing": (dilation(spread(1.2), noises=("sym30",)), INCONCLUSIVE),  # one noise rate: nothing to compare
    },
    findings.claim_label_smoothing: {
        "supports": (label_smoothing(ls_dilation=spread(1.0)), SUPPORTED),
        "refutes": (label_smoothing(ls_dilation=spread(1.5)), NOT_SUPPORTED),
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
    column = next(c for c in fn.columns if c not in ("model", "loss", "noise", "seed"))
    runs = runs.drop(columns=[c for c in runs.columns if c == column])
    _, measured, criterion, verdict = row_of(fn, runs, monkeypatch)
    assert verdict == INCONCLUSIVE and criterion == ""
    assert measured == f"not measured (no column {column} in tables/runs.csv)"


def test_not_measured_names_every_absent_column(monkeypatch):
    runs = table(routing_margin_correct=0.2)[["model", "noise", "seed"]]
    _, measured, _, _ = row_of(findings.claim_routing, runs, monkeypatch)
    assert measured == ("not measured (no column routing_margin_correct, routing_margin_incorrect, "
                        "routing_margin_correct_init, routing_margin_incorrect_init in tables/runs.csv)")


# the margin rule: an effect decides a verdict only when it clears the spread over seeds


def test_margin_verdict():
    assert margin_verdict([0.7, 0.72, 0.68], 0.5, 2.0)[0] == SUPPORTED
    assert margin_verdict([0.1, 0.12, 0.08], 0.5, 2.0)[0] == NOT_SUPPORTED
    assert margin_verdict([0.2, 0.5, 0.9], 0.5, 2.0)[0] == INCONCLUSIVE  # the interval holds the threshold
    assert margin_verdict([0.9, NAN], 0.5, 2.0)[0] == INCONCLUSIVE  # one seed: no spread to clear
    verdict, numbers = margin_verdict([0.6, 0.7, 0.8], 0.5, 2.0)
    assert numbers == "0.7 [0.585, 0.815] vs 0.5" and verdict == SUPPORTED


def test_an_effect_within_the_seed_spread_is_inconclusive(monkeypatch):
    """The issue's round-off flip: a difference smaller than the spread over seeds decides nothing."""
    last = per_model(mlp7=per_noise(sym30=lambda r: [0.2, 0.6, 0.3][r["seed"]], sym0=spread(0.3, 0.1)), other=0.2)
    assert row_of(findings.claim_late_change_with_dd, late_change(last), monkeypatch)[3] == INCONCLUSIVE
    seeds_disagree = double_descent("test_loss", per_model(mlp7=lambda r: [0.1, 0.7, 0.8][r["seed"]],
                                                           other=spread(0.1)))
    assert row_of(findings.claim_dd_deepest_only, seeds_disagree, monkeypatch)[3] == INCONCLUSIVE


def test_dd_deepest_only_reports_the_control_and_measures_its_own_curve(monkeypatch):
    runs = double_descent("test_loss", per_model(mlp7=per_noise(sym30=spread(0.7), sym0=spread(0.0, 0.01)),
                                                 other=spread(0.1)), noises=("sym0", "sym30"))
    runs = runs.merge(double_descent("test_error", spread(0.1), noises=("sym0", "sym30")),
                      on=["model", "noise", "loss", "seed"])
    _, measured, criterion, verdict = row_of(findings.claim_dd_deepest_only, runs, monkeypatch)
    _, *_, error_verdict = row_of(findings.claim_dd_deepest_only_test_error, runs, monkeypatch)
    assert (verdict, error_verdict) == (SUPPORTED, NOT_SUPPORTED)
    assert "mlp7: test loss min → peak → final 10 → 30 → 20, recovery after the fit 0.7 [" in measured
    assert "0 % noise: mlp3 recovery" in measured
    assert criterion.startswith("test_loss_recovery_ratio (fall after the noisy labels are fitted ÷ rise")


def test_dd_deepest_only_needs_two_models(monkeypatch):
    runs = double_descent("test_loss", spread(0.7)).query("model == 'mlp7'")
    assert row_of(findings.claim_dd_deepest_only, runs, monkeypatch)[3] == INCONCLUSIVE


def test_benign_leaves_out_seeds_that_never_fitted_and_counts_an_early_fit_as_no_recovery(monkeypatch):
    runs = benign(ratio=spread(0.7, 0.05), t_fit_noisy=lambda r: NAN if r["seed"] == 2 else 200.0)
    _, measured, _, verdict = row_of(findings.claim_benign, runs, monkeypatch)
    assert verdict == SUPPORTED and "noisy labels fitted in 2 of 3 seeds" in measured
    early = benign(ratio=spread(0.7, 0.05), phase2_end=NAN)  # fitted before the first minimum: no phase 2
    assert row_of(findings.claim_benign, early, monkeypatch)[3] == NOT_SUPPORTED


def test_routing_without_change_from_epoch_0_is_not_supported(monkeypatch):
    """The right signs at the end, but the same margins before any training: the routing is not learned."""
    runs = routing(correct=spread(0.2), incorrect=spread(-0.1), correct_init=spread(0.25), incorrect_init=spread(-0.15))
    assert row_of(findings.claim_routing, runs, monkeypatch)[3] == NOT_SUPPORTED


def test_input_not_output_held_against_the_typical_units(monkeypatch):
    """A layer-1 unit follows the input by construction: a top unit no more input-driven than the layer's
    typical units does not support the claim."""
    runs = follows(input_r2=spread(0.6), output_r2=spread(0.2), typical_input=spread(0.7), typical_output=spread(0.1))
    assert row_of(findings.claim_input_not_output, runs, monkeypatch)[3] == NOT_SUPPORTED


def test_large_activation_no_larger_than_at_initialisation_is_not_supported(monkeypatch):
    runs = large_activation(shallow=spread(50.0, 2.0), init=spread(55.0, 2.0))
    assert row_of(findings.claim_shallow_large_activation, runs, monkeypatch)[3] == NOT_SUPPORTED


def test_outer_separation_needs_the_last_layer_to_separate_more_than_the_first(monkeypatch):
    runs = separation(outer=spread(-0.3), inner=spread(-0.4))  # layer 1 separates even more
    assert row_of(findings.claim_outer_separation, runs, monkeypatch)[3] == NOT_SUPPORTED


def test_label_smoothing_without_ls_runs_keeps_its_message(monkeypatch):
    runs = table(dilation_normalized_final=1.0, memorization_normalized_final=1.0, final_accuracy_test=0.8)
    _, measured, _, verdict = row_of(findings.claim_label_smoothing, runs, monkeypatch)
    assert verdict == INCONCLUSIVE and measured.startswith("no label-smoothing runs")


# programming errors raise; they are not verdicts


@findings.needs("model", "dilation_final")
def _misspelt(runs, depths, p):
    return "", "", SUPPORTED if (runs["dilation_finall"] > 1).all() else NOT_SUPPORTED  # noqa


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
    with pytest.raises(KeyError, match="margin_se"):
        row_of(findings.claim_dilation, runs, monkeypatch, params={})


# all claims on one table


def full_table(seed=0) -> pd.DataFrame:
    """Every column any claim declares, random values, for 3 models × 2 losses × 3 seeds."""
    rng = np.random.default_rng(seed)
    runs = pd.DataFrame([{"run": f"{m}-{noise}-{loss}-s{s}", "model": m, "noise": noise, "loss": loss, "seed": s}
                         for m in DEPTHS for noise in ("sym0", "sym30") for loss in ("ce", "ls") for s in range(3)])
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
    without = runs.drop(columns=["routing_margin_correct", "routing_margin_incorrect", "routing_margin_correct_init",
                                 "routing_margin_incorrect_init"])
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
