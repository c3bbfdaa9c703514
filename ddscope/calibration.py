"""Error rates of the double-descent criteria on synthetic runs whose truth is known.

Each synthetic run has the default study's shape (600 epochs, 4,000 test samples): the test error falls to
0.32 by epoch 25 (phase 1), rises by 0.16 while the noisy labels are learned (fitted at epoch 250, phase 2),
then takes back a chosen share of that rise (phase 3, time constant 80 epochs). Every evaluation of the test
error is a binomial draw from the 4,000 test samples; the test loss (1 -> 12 nats -> back by the same share)
carries Gaussian noise of 3 % of its level, the standard error of a mean of 4,000 per-sample losses whose
spread is twice their mean. The train accuracies follow the same phases, with the binomial noise of their
sets (12,000 clean, 4,800 noisy samples).

Truth: a run "has" double descent when phase 3 takes back at least min_recovery (1/2) of the rise. So a
flagged run of a condition with a share below 1/2 is a false positive, an unflagged one above it a false
negative. The conditions: flat, a partial retreat (1/4), just below and just above the bar (0.4, 0.6), a
strong recovery (4/5), and a strong recovery of a bump of 0.03, about 2.7 binomial standard errors (near the
noise: the criterion is expected to miss it, and says so).
`python -m ddscope.calibration [--draws N]` prints the table in docs/findings.md; the tests assert its bounds.
"""

from __future__ import annotations

import argparse

import numpy as np
import xarray as xr

from ddscope.analyses.double_descent import DEFAULT_PARAMS, extract_double_descent, moving_average

SPLITS = ["train_all", "train_clean", "train_noisy_assigned", "train_noisy_original", "test"]
SIZES = {"n_test": 4000, "n_noisy": 4800, "n_clean": 11200, "n_classes": 10}
T_MIN, T_FIT, TAU, EPOCHS = 25, 250, 80.0, 600
# condition -> (share of the rise taken back in phase 3, size of the test error's rise)
CONDITIONS = {"flat after the fit": (0.0, 0.16), "partial retreat": (0.25, 0.16), "just below": (0.4, 0.16),
              "just above": (0.6, 0.16), "strong recovery": (0.8, 0.16),
              "strong, small bump": (0.8, 0.03)}


def _smoothstep(t, t0, t1):
    x = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def synthetic_curves(share: float, rng: np.random.Generator, rise: float = 0.16) -> xr.Dataset:
    """One run's curves.nc: the test error rises by `rise` in phase 2 (the loss by 11 nats x rise / 0.16) and
    phase 3 takes back `share` of it."""
    t = np.arange(EPOCHS + 1, dtype=np.float64)
    learn_noise = _smoothstep(t, T_MIN, T_FIT)
    back = share * (1.0 - np.exp(-np.maximum(t - T_FIT, 0.0) / TAU))
    error = 0.32 + 0.58 * np.exp(-t / 8.0) + rise * (learn_noise - back)
    loss = 1.0 + 1.3 * np.exp(-t / 8.0) + 11.0 * rise / 0.16 * (learn_noise - back)
    clean = 0.1 + 0.9 * (1.0 - np.exp(-t / 6.0))
    noisy = np.minimum(0.02 + 0.98 * _smoothstep(t, T_MIN, T_FIT - 5), 1.0)
    draw = lambda p, n: rng.binomial(n, np.clip(p, 0.0, 1.0)) / n  # noqa: E731
    test_acc = 1.0 - draw(error, SIZES["n_test"])
    clean_acc, noisy_acc = draw(clean, SIZES["n_clean"]), draw(noisy, SIZES["n_noisy"])
    original = draw(0.8 * (1.0 - noisy), SIZES["n_noisy"])
    all_acc = 0.7 * clean_acc + 0.3 * noisy_acc
    accuracy = np.stack([all_acc, clean_acc, noisy_acc, original, test_acc], axis=1)
    losses = -np.log(np.clip(accuracy, 1e-3, 1.0))
    losses[:, -1] = loss * (1.0 + 0.03 * rng.standard_normal(t.size))
    return xr.Dataset({"loss": (("epoch", "split"), losses), "accuracy": (("epoch", "split"), accuracy)},
                      coords={"epoch": t.astype(np.int64), "split": SPLITS})


def previous_flags(ds: xr.Dataset, curves: xr.Dataset) -> dict:
    """The criteria before the noise-aware ones, for comparison: a rise and a fall of the smoothed test error
    of >= 0.01 each, and a fall of >= 0.01 from the *maximum* of the smoothed error after the fit."""
    err = moving_average(1.0 - curves.accuracy.sel(split="test").values, 5)
    after = err[curves.epoch.values >= float(ds.t_fit_noisy)]
    return {"double_descent_test_error": bool(ds.dd_depth >= 0.01 and ds.dd_recovery >= 0.01),
            "regeneralises_after_fit": bool(after.size and after.max() - after[-1] >= 0.01)}


FLAGS = ("double_descent_test_error", "double_descent_test_loss", "regeneralises_after_fit")


def flag_rates(draws: int = 500, seed: int = 0, params: dict | None = None) -> dict:
    """{condition: {flag: fraction of draws flagged}}, and the previous criteria's as `previous <flag>`."""
    rng = np.random.default_rng(seed)
    p = {**DEFAULT_PARAMS, **SIZES, **(params or {})}
    rates = {}
    for name, (share, rise) in CONDITIONS.items():
        hits = {}
        for _ in range(draws):
            curves = synthetic_curves(share, rng, rise)
            ds = extract_double_descent(curves, p)
            for flag in FLAGS:
                hits[flag] = hits.get(flag, 0) + bool(ds[flag])
            for flag, value in previous_flags(ds, curves).items():
                hits[f"previous {flag}"] = hits.get(f"previous {flag}", 0) + value
        rates[name] = {flag: count / draws for flag, count in hits.items()}
    return rates


def rates_table(rates: dict, min_recovery: float = DEFAULT_PARAMS["min_recovery"]) -> str:
    """Markdown: one row per criterion, one column per condition, each cell the share flagged and whether that
    share is a false-positive (truth: no double descent) or a false-negative rate."""
    names = list(rates)
    lines = ["| criterion | " + " | ".join(f"{n} ({CONDITIONS[n][0]:g} of {CONDITIONS[n][1]:g})" for n in names)
             + " |",
             "|---" * (len(names) + 1) + "|"]
    for flag in rates[names[0]]:
        cells = []
        for n in names:
            r = rates[n][flag]
            cells.append(f"FP {r:.1%}" if CONDITIONS[n][0] < min_recovery else f"FN {1 - r:.1%}")
        lines.append(f"| `{flag}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(rates_table(flag_rates(args.draws, args.seed)))


if __name__ == "__main__":
    main()
