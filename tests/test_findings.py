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
PARAMS = {"majority": 0.5, "separation_gap": 0.05, "shallow_fraction": 0.5}  # schema defaults
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


def onset() -> dict:
    """onset_epoch_l1 … l6 and _last columns (epoch 10·k in layer k)."""
    return {f"onset_epoch_l{k}": [10.0 * k] * 6 for k in range(1, 7)} | {"onset_epoch_last": [60.0] * 6}


def label_smoothing(ls_dilation: float, ce_dilation: float = 1.2) -> pd.DataFrame:
    rows = [{"model": m, "loss": loss, "seed": s, "dilation_final": ls_dilation if loss == "ls" else ce_dilation,
             "final_accuracy_test": 0.8 if loss == "ls" else 0.75}
            for m in DEPTHS for loss in ("ce", "ls") for s in (0, 1)]
    return pd.DataFrame(rows)


# claim -> case -> (runs, expected verdict)
CASES = {
    findings.claim_dd_deepest_only: {
        "supports": (table(epochwise_double_descent=deep_only(1.0, 0.0), dd_recovery=0.1), SUPPORTED),
        "refutes": (table(epochwise_double_descent=[1.0, 1.0, 0.0, 0.0, 1.0, 1.0], dd_recovery=0.1), NOT_SUPPORTED),
        "missing": (table(epochwise_double_descent=NAN, dd_recovery=NAN), INCONCLUSIVE),
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
        "supports": (table(separation_first_minus_last=0.3, separation_final_l1=0.9, separation_final_last=0.6),
                     SUPPORTED),
        "refutes": (table(separation_first_minus_last=[0.01, -0.2] * 3, separation_final_l1=0.6,
                          separation_final_last=0.7), NOT_SUPPORTED),
        "missing": (table(separation_first_minus_last=NAN, separation_final_l1=NAN, separation_final_last=NAN),
                    INCONCLUSIVE),
    },
    findings.claim_shallow_large_activation: {
        "supports": (table(large_layer=2, large_layer_fraction=deep_only(2 / 6, 0.5), large_ratio=50.0, **onset()),
                     SUPPORTED),
        "refutes": (table(large_layer=deep_only(6, 4), large_layer_fraction=1.0, large_ratio=50.0, **onset()),
                    NOT_SUPPORTED),
        "missing": (table(large_layer=NAN, large_layer_fraction=NAN, large_ratio=NAN, **onset()), INCONCLUSIVE),
    },
    findings.claim_input_not_output: {
        "supports": (table(large_input_r2=deep_only(0.6, 0.0), large_output_eta2=deep_only(0.2, 0.9)), SUPPORTED),
        "refutes": (table(large_input_r2=deep_only(0.2, 0.9), large_output_eta2=deep_only(0.6, 0.0)), NOT_SUPPORTED),
        "missing": (table(large_input_r2=deep_only(NAN, 0.9), large_output_eta2=deep_only(NAN, 0.0)), INCONCLUSIVE),
    },
    findings.claim_benign: {
        "supports": (table(benign_overfitting=deep_only(1.0, 0.0), test_error_final=0.3, test_error_min=0.3,
                           final_accuracy_train_noisy_assigned=1.0), SUPPORTED),
        "refutes": (table(benign_overfitting=deep_only(0.0, 1.0), test_error_final=0.5, test_error_min=0.3,
                          final_accuracy_train_noisy_assigned=1.0), NOT_SUPPORTED),
        "missing": (table(benign_overfitting=deep_only(NAN, 1.0), test_error_final=NAN, test_error_min=NAN,
                          final_accuracy_train_noisy_assigned=NAN), INCONCLUSIVE),
    },
    findings.claim_routing: {
        "supports": (table(routing_margin_correct=0.2, routing_margin_incorrect=-0.1), SUPPORTED),
        "refutes": (table(routing_margin_correct=-0.1, routing_margin_incorrect=0.2), NOT_SUPPORTED),
        "missing": (table(routing_margin_correct=NAN, routing_margin_incorrect=NAN), INCONCLUSIVE),
    },
    findings.claim_late_change_deeper: {
        "supports": (table(epochwise_double_descent=1.0, cka_late_change_l1=0.05, cka_late_change_last=0.4,
                           cka_late_epoch=50.0), SUPPORTED),
        "refutes": (table(epochwise_double_descent=1.0, cka_late_change_l1=0.4, cka_late_change_last=0.05,
                          cka_late_epoch=50.0), NOT_SUPPORTED),
        "missing": (table(epochwise_double_descent=1.0, cka_late_change_l1=NAN, cka_late_change_last=NAN,
                          cka_late_epoch=50.0), INCONCLUSIVE),
    },
    findings.claim_dilation: {
        "supports": (table(dilation_final=1.3, nc1_final=2.0), SUPPORTED),
        "refutes": (table(dilation_final=[0.8, 0.9] * 3, nc1_final=2.0), NOT_SUPPORTED),
        "missing": (table(dilation_final=NAN, nc1_final=NAN), INCONCLUSIVE),
    },
    findings.claim_label_smoothing: {
        "supports": (label_smoothing(ls_dilation=1.0), SUPPORTED),
        "refutes": (label_smoothing(ls_dilation=1.5), NOT_SUPPORTED),
        "missing": (label_smoothing(ls_dilation=NAN), INCONCLUSIVE),
    },
}
CLAIM_NAMES = {fn: claim for claim, fn in findings.CLAIMS}


def row_of(fn, runs: pd.DataFrame, monkeypatch, params=PARAMS) -> tuple:
    """(claim, measured, criterion, verdict) of one claim, through findings_rows."""
    monkeypatch.setattr(findings, "CLAIMS", [(CLAIM_NAMES[fn], fn)])
    (row,) = findings_rows(runs, DEPTHS, params, RATIO_THRESHOLD)
    return row


def test_every_claim_has_its_cases_and_declares_its_columns():
    assert set(CASES) == {fn for _, fn in findings.CLAIMS} and len(findings.CLAIMS) == 10
    for fn in CASES:
        assert fn.columns and len(set(fn.columns)) == len(fn.columns), fn.__name__


@pytest.mark.parametrize("fn, case", [(fn, case) for fn, cases in CASES.items() for case in cases],
                         ids=lambda x: x.__name__.removeprefix("claim_") if callable(x) else x)
def test_claim_verdict(fn, case, monkeypatch):
    runs, expected = CASES[fn][case]
    claim, measured, criterion, verdict = row_of(fn, runs, monkeypatch)
    assert verdict == expected, (measured, criterion)
    assert claim == CLAIM_NAMES[fn] and criterion and measured and not measured.startswith("not measured")


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


def test_dd_deepest_only_needs_two_models(monkeypatch):
    runs = table(epochwise_double_descent=1.0, dd_recovery=0.1).query("model == 'mlp7'")
    assert row_of(findings.claim_dd_deepest_only, runs, monkeypatch)[3] == INCONCLUSIVE


def test_clean_first_when_only_clean_samples_were_fitted(monkeypatch):
    runs = table(t_fit_clean=5.0, t_fit_noisy=NAN, final_accuracy_train_clean=1.0,
                 final_accuracy_train_noisy_assigned=0.2)
    _, measured, _, verdict = row_of(findings.claim_clean_first, runs, monkeypatch)
    assert verdict == SUPPORTED and "final clean − noisy accuracy 0.800 ± 0.000 (n=6)" in measured


def test_shallow_large_activation_measured(monkeypatch):
    runs, _ = CASES[findings.claim_shallow_large_activation]["supports"]
    _, measured, criterion, _ = row_of(findings.claim_shallow_large_activation, runs, monkeypatch)
    assert measured == ("mlp7: largest top/median ratio 50.0 ± 0.0 (n=2) in layer(s) [2] of 6; "
                        "onset epoch there 20 ± 0 (n=2)")
    assert criterion == "ratio ≥ 10.0 in a layer in the first 50% of the network (deepest model)"


def test_shallow_large_activation_without_a_large_ratio_is_inconclusive(monkeypatch):
    runs = table(large_layer=2, large_layer_fraction=2 / 6, large_ratio=3.0, **onset())
    assert row_of(findings.claim_shallow_large_activation, runs, monkeypatch)[3] == INCONCLUSIVE


def test_routing_right_order_wrong_signs_is_inconclusive(monkeypatch):
    runs = table(routing_margin_correct=0.3, routing_margin_incorrect=0.1)
    assert row_of(findings.claim_routing, runs, monkeypatch)[3] == INCONCLUSIVE


def test_late_change_without_double_descent_is_inconclusive(monkeypatch):
    runs = table(epochwise_double_descent=0.0, cka_late_change_l1=0.05, cka_late_change_last=0.4, cka_late_epoch=50.0)
    _, measured, _, verdict = row_of(findings.claim_late_change_deeper, runs, monkeypatch)
    assert verdict == INCONCLUSIVE and measured.startswith("runs with epoch-wise double descent: 0;")


def test_label_smoothing_without_ls_runs_keeps_its_message(monkeypatch):
    runs = label_smoothing(ls_dilation=1.0).query("loss == 'ce'")
    _, measured, _, verdict = row_of(findings.claim_label_smoothing, runs, monkeypatch)
    assert verdict == INCONCLUSIVE
    assert measured == "no label-smoothing runs in this study (see configs/label-smoothing.yaml)"


# programming errors raise; they are not verdicts


@findings.needs("model", "dilation_final")
def _misspelt(runs, depths, p):
    return "", "", SUPPORTED if (runs["dilation_finall"] > 1).all() else NOT_SUPPORTED


@findings.needs("model")
def _undeclared(runs, depths, p):
    return "", "", SUPPORTED if (runs.dilation_final > 1).all() else NOT_SUPPORTED


def test_misspelt_column_raises(monkeypatch):
    monkeypatch.setattr(findings, "CLAIMS", [("faulty", _misspelt)])
    with pytest.raises(KeyError, match="dilation_finall"):
        findings_rows(table(dilation_final=1.3), DEPTHS, PARAMS, RATIO_THRESHOLD)


def test_column_read_but_not_declared_raises_even_when_present(monkeypatch):
    monkeypatch.setattr(findings, "CLAIMS", [("faulty", _undeclared)])
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
    for column in dict.fromkeys(c for _, fn in findings.CLAIMS for c in fn.columns if c not in runs.columns):
        if column.endswith("*"):
            for k in range(1, 7):
                runs[f"{column[:-1]}{k}"] = rng.integers(0, 100, n).astype(float)
        else:
            runs[column] = rng.random(n)
    for flag in ("epochwise_double_descent", "benign_overfitting"):
        runs[flag] = rng.integers(0, 2, n).astype(float)
    runs["large_layer"] = [rng.integers(1, DEPTHS[m] + 1) for m in runs.model]
    runs["large_layer_fraction"] = runs.large_layer / runs.model.map(DEPTHS)
    runs["large_ratio"] = rng.uniform(1, 40, n)
    return runs


def test_findings_rows_on_a_full_table():
    rows = findings_rows(full_table(), DEPTHS, PARAMS, RATIO_THRESHOLD)
    assert [claim for claim, *_ in rows] == [claim for claim, _ in findings.CLAIMS]
    assert all(verdict in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE) for *_, verdict in rows)
    assert not any(measured.startswith("not measured") for _, measured, _, _ in rows)


def test_findings_rows_without_an_analysis():
    """No routing analysis: only the routing row is "not measured", the others are computed as before."""
    runs = full_table()
    without = runs.drop(columns=["routing_margin_correct", "routing_margin_incorrect"])
    full, partial = (findings_rows(r, DEPTHS, PARAMS, RATIO_THRESHOLD) for r in (runs, without))
    i = [fn for _, fn in findings.CLAIMS].index(findings.claim_routing)
    assert partial[i][1].startswith("not measured (no column routing_margin_correct")
    assert partial[:i] + partial[i + 1:] == full[:i] + full[i + 1:]


def test_claim_without_its_per_layer_columns_is_not_measured(monkeypatch):
    runs, _ = CASES[findings.claim_shallow_large_activation]["supports"]
    runs = runs.drop(columns=[c for c in runs.columns if c.startswith("onset_epoch_")])
    _, measured, _, verdict = row_of(findings.claim_shallow_large_activation, runs, monkeypatch)
    assert verdict == INCONCLUSIVE and measured == "not measured (no column onset_epoch_l* in tables/runs.csv)"
