"""The threshold study's rows of findings.md: (claim, the paper's statement, measured, criterion, verdict).

T1 tests the optimization threshold as the paper states it: beyond n* training stops at a non-interpolating
solution (so the non-interpolating students must have stopped moving, not merely be slow at the end of the
budget) and that solution generalises much better than interpolation would at the same n (the break of the test
loss at n* net of each regime's trend in n, see ddscope/threshold/sweep.py), not better than smaller n did.
T2 tests early alignment: measured at the same point of training (the end of the early phase) at every n, so
comparing n is the claim itself (alignment with the teacher improves with more samples), not a confound.
"""

from __future__ import annotations

import math

import numpy as np

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
PAPER = "Boursier & Flammarion 2025"
SOURCE_T1 = ("“the trained models go from global minima to spurious local minima of the training loss as the number "
             "of training samples becomes larger than some level we call optimization threshold”; “networks might "
             "converge towards simpler solutions rather than interpolating training data, which leads to a drastic "
             f"improvement on the test loss” ({PAPER}, abstract)")
SOURCE_T2 = ("“the so called early alignment phase, during which neurons align toward specific directions. This "
             "directional alignment leads to a simplicity bias, wherein the network approximates the ground truth "
             f"model” ({PAPER}, abstract)")


def _fmt_n(value: float) -> str:
    return "beyond the grid (∞)" if math.isinf(value) else f"{value:g}"


def _fmt_range(n: np.ndarray) -> str:
    if not n.size:
        return "none"
    return f"{n[0]:g}" if n.size == 1 else f"{n[0]:g}–{n[-1]:g} ({n.size} points)"


def _fmt_slope(value) -> str:
    value = float(value)
    return f"{value:+.2f}" if np.isfinite(value) else "— (no fit)"


def threshold_row(ds) -> tuple[str, str, str]:
    """T1: (measured, criterion, verdict) from the sweep (break_at_threshold's variables and the convergence flags)."""
    n = ds.n.values.astype(float)
    n_star = float(ds.n_threshold)
    majority, tol = ds.attrs["majority"], ds.attrs["interpolation_tol"]
    conv_tol, bar = ds.attrs["converged_tol"], ds.attrs["break_ratio"]
    bracketed = bool(ds.attrs["threshold_bracketed"])
    stuck = ~ds.interpolates.values
    seeds = ", ".join(_fmt_n(v) for v in ds.n_threshold_seed.values)

    measured = [f"n* = {_fmt_n(n_star)} (per seed: {seeds})"]
    if not ds.attrs["interpolation_monotone"]:
        measured.append("interpolation is not monotone in n")
    measured.append(f"non-interpolating runs converged: {int((ds.converged.values & stuck).sum())} of "
                    f"{int(stuck.sum())}")
    if bracketed:
        past = n >= n_star
        settled = n[past & ds.point_converged.values]
        measured.append(f"grid points from n* on with every non-interpolating run converged: "
                        f"{', '.join(f'{v:g}' for v in settled) or 'none'} (of {int(past.sum())})")
        below, beyond = n[ds.break_fit_below.values], n[ds.break_fit_beyond.values]
        measured.append(f"log-log trend of test loss: interpolating runs at n = {_fmt_range(below)} slope "
                        f"{_fmt_slope(ds.test_slope_below)}, non-interpolating runs at n = {_fmt_range(beyond)} "
                        f"slope {_fmt_slope(ds.test_slope_beyond)}")
        ratio = float(ds.test_break)
        if np.isfinite(ratio):
            measured.append(f"trends at n = {float(ds.test_break_n):.3g}: beyond {float(ds.test_trend_beyond):.3g} "
                            f"vs interpolating {float(ds.test_trend_below):.3g}, ratio {ratio:.3g}")
        else:
            sides = [side for side, pts in (("below", below), ("beyond", beyond)) if pts.size < 2]
            measured.append(f"break not estimable: fewer than two grid points {' and '.join(sides)} n*")
    criterion = (f"interpolates: final train MSE < {tol:g}·σ²; a grid n interpolates when ≥ {majority:.0%} of "
                 f"seeds do; converged: train loss within {conv_tol:.0%} of its final value over the last half of the "
                 "steps; grid points from n* on count only when all their non-interpolating runs converged; "
                 "least-squares lines of log test loss on log n through the interpolating runs below n* and the "
                 "non-interpolating runs from n* on, compared where the regimes meet (√(n before n* · n*)); "
                 f"supported if the grid brackets n* and the line beyond n* is at most {bar:g} × the interpolating "
                 "one there; inconclusive with fewer than two grid points on a side")
    ratio = float(ds.test_break)
    if not bracketed or not np.isfinite(ratio):
        verdict = INCONCLUSIVE
    else:
        verdict = SUPPORTED if ratio <= bar else NOT_SUPPORTED
    return "; ".join(measured), criterion, verdict


def alignment_row(ds) -> tuple[str, str, str]:
    """T2: (measured, criterion, verdict) from the aligned fraction at the end of the early phase, both grid ends."""
    n = ds.n.values.astype(float)
    majority, thr = ds.attrs["majority"], ds.attrs["align_threshold"]
    frac = ds.aligned_fraction.mean("seed").values
    measured = (f"aligned fraction at the end of the early phase: n = {n[0]:g}: {frac[0]:.2f}, "
                f"n = {n[-1]:g}: {frac[-1]:.2f}; median early step {np.median(ds.early_step.values):g}")
    criterion = (f"aligned: largest cosine with a teacher direction ≥ {thr:g}, measured when the train loss has "
                 f"fallen by {ds.attrs['early_loss_drop']:.0%} (the same point of training at every n); supported if "
                 f"the fraction at the largest n is ≥ {majority:.0%} and larger than at the smallest n")
    if len(n) < 2 or not np.isfinite(frac[0]) or not np.isfinite(frac[-1]):
        verdict = INCONCLUSIVE
    else:
        verdict = SUPPORTED if frac[-1] >= majority and frac[-1] > frac[0] else NOT_SUPPORTED
    return measured, criterion, verdict


def findings_rows(ds) -> list[tuple[str, str, str, str, str]]:
    """Rows (claim, source, measured, criterion, verdict) of the threshold study, every number from the sweep."""
    return [
        ("Optimization threshold: from some n* on, a small-init two-layer ReLU student no longer interpolates the "
         "noisy labels but settles at a non-interpolating solution, and its test loss drops below what the "
         "interpolating regime's trend in n gives at n*", SOURCE_T1, *threshold_row(ds)),
        ("Early alignment: with small initialisation the neurons align with the teacher directions in the early "
         "phase, and more of them do the larger n", SOURCE_T2, *alignment_row(ds)),
    ]


def findings_fragment(study: str, rows) -> str:
    """A markdown table with the columns of findings.md; rows numbered T1, T2, … (to merge into findings.md)."""
    lines = [f"<!-- threshold study `{study}`: generated by rule threshold_findings from threshold_sweep.nc -->",
             "| # | claim | the paper says | measured | criterion | verdict |", "|---|---|---|---|---|---|"]
    for i, (claim, source, measured, criterion, verdict) in enumerate(rows, 1):
        lines.append(f"| T{i} | {claim} | {source} | {measured} | {criterion} | **{verdict}** |")
    return "\n".join(lines) + "\n"
